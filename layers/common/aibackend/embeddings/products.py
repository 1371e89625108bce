"""The demo product catalog that semantic search runs over, and the seeded generator that wrote it.

`data/products.jsonl` is committed (one product per line); `python -m
aibackend.embeddings.products > layers/common/aibackend/embeddings/data/products.jsonl`
writes it again, byte for byte (a test checks that). Products are built from hand-written
parts per category (kinds of product, features, uses, brand names) so that names and
descriptions vary the way a shop's do; nothing here was produced by a model.

`data/queries.jsonl` holds hand-written shopper queries with the categories that answer them,
for the build step's retrieval evaluation (semantic search against a BM25 keyword baseline).
"""

from __future__ import annotations

import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from aibackend.errors import ConfigError

DATA_DIR = Path(__file__).resolve().parent / "data"
CATALOG_FILE = DATA_DIR / "products.jsonl"
QUERIES_FILE = DATA_DIR / "queries.jsonl"
#: Seed and size of the committed catalog.
SEED = 11
PER_CATEGORY = 15

M = TypeVar("M", bound=BaseModel)


class Product(BaseModel):
    """One catalog entry; `text` is what gets embedded."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    product_id: Annotated[str, Field(pattern=r"^p-\d{4}$")]
    name: Annotated[str, Field(min_length=1, max_length=120)]
    category: Annotated[str, Field(min_length=1, max_length=60)]
    description: Annotated[str, Field(min_length=1, max_length=600)]
    price: Annotated[float, Field(gt=0, description="US dollars")]

    @property
    def text(self) -> str:
        """Name and description, the way a shopper reads them."""
        return f"{self.name}. {self.description}"


class Query(BaseModel):
    """A shopper's query and the categories whose products answer it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    query: Annotated[str, Field(min_length=1)]
    relevant: Annotated[tuple[str, ...], Field(min_length=1)]


@dataclass(frozen=True)
class Category:
    """Parts of one category's products."""

    name: str
    kinds: tuple[str, ...]
    features: tuple[str, ...]
    uses: tuple[str, ...]
    price: tuple[float, float]


CATEGORIES: tuple[Category, ...] = (
    Category(
        "running shoes",
        ("running shoe", "trail runner", "road racing flat", "cushioned trainer"),
        (
            "a breathable mesh upper",
            "a responsive foam midsole",
            "a grippy rubber outsole",
            "a reflective heel tab",
            "a wide toe box",
            "a carbon-plated sole",
        ),
        ("daily training runs", "marathon race day", "muddy trail routes", "easy recovery jogs"),
        (60, 220),
    ),
    Category(
        "travel mugs",
        ("travel mug", "insulated tumbler", "commuter cup", "thermal flask"),
        (
            "double-wall vacuum insulation",
            "a leak-proof flip lid",
            "a stainless steel body",
            "a ceramic-coated interior",
            "a one-handed push button",
        ),
        ("keeping coffee hot on the drive to work", "iced drinks at the beach", "morning tea"),
        (15, 45),
    ),
    Category(
        "headphones",
        (
            "over-ear headphones",
            "wireless earbuds",
            "studio monitor headphones",
            "neckband earphones",
        ),
        (
            "active noise cancelling",
            "40-hour battery life",
            "memory foam ear cushions",
            "a built-in microphone for calls",
            "low-latency Bluetooth 5.3",
            "a foldable design",
        ),
        ("long flights", "focused work in open offices", "mixing music", "the gym"),
        (30, 400),
    ),
    Category(
        "backpacks",
        ("daypack", "laptop backpack", "hiking backpack", "roll-top backpack"),
        (
            "a padded 16-inch laptop sleeve",
            "water-resistant recycled nylon",
            "a ventilated back panel",
            "hip belt pockets",
            "a hidden passport pocket",
        ),
        ("the daily commute", "weekend hikes", "carry-on travel", "campus life"),
        (40, 180),
    ),
    Category(
        "desk lamps",
        ("LED desk lamp", "architect lamp", "clamp-on task light", "bedside reading lamp"),
        (
            "five colour temperatures",
            "a flicker-free dimmer",
            "a USB charging port in the base",
            "an adjustable swing arm",
            "an auto-off timer",
        ),
        ("late-night studying", "detailed craft work", "reading in bed", "video calls"),
        (20, 120),
    ),
    Category(
        "yoga mats",
        ("yoga mat", "travel yoga mat", "extra-thick exercise mat", "cork yoga mat"),
        (
            "a non-slip natural rubber surface",
            "alignment lines",
            "a carrying strap",
            "closed-cell foam that wipes clean",
            "6 mm of joint-friendly cushioning",
        ),
        ("hot yoga classes", "pilates at home", "stretching after runs", "meditation"),
        (18, 110),
    ),
    Category(
        "coffee makers",
        ("drip coffee maker", "espresso machine", "pour-over kettle", "cold brew maker"),
        (
            "a programmable brew timer",
            "a 15-bar pump",
            "a built-in burr grinder",
            "a gooseneck spout",
            "a thermal carafe",
        ),
        ("busy weekday mornings", "café-style lattes at home", "slow weekend brewing"),
        (25, 650),
    ),
    Category(
        "rain jackets",
        ("rain jacket", "waterproof shell", "packable windbreaker", "insulated parka"),
        (
            "taped seams",
            "a three-layer waterproof membrane",
            "pit zips for venting",
            "an adjustable storm hood",
            "a jacket that packs into its own pocket",
        ),
        ("downpours on the way to work", "alpine hiking", "windy coastal walks", "festival season"),
        (50, 350),
    ),
    Category(
        "kitchen knives",
        ("chef's knife", "santoku knife", "paring knife", "bread knife"),
        (
            "a high-carbon German steel blade",
            "a Damascus-pattern blade",
            "a full tang",
            "an ergonomic pakkawood handle",
            "a razor-sharp 15-degree edge",
        ),
        ("dicing vegetables", "slicing crusty loaves", "everyday home cooking", "peeling fruit"),
        (20, 240),
    ),
    Category(
        "office chairs",
        ("ergonomic office chair", "mesh task chair", "executive chair", "kneeling chair"),
        (
            "adjustable lumbar support",
            "4D armrests",
            "a breathable mesh back",
            "a synchro-tilt mechanism",
            "a seat depth slider",
        ),
        ("long days working from home", "gaming sessions", "better posture at the desk"),
        (120, 900),
    ),
    Category(
        "phone chargers",
        ("USB-C wall charger", "wireless charging pad", "power bank", "car charger"),
        (
            "65 W GaN fast charging",
            "two USB-C ports",
            "a 20,000 mAh battery",
            "MagSafe-compatible magnets",
            "foldable plug prongs",
        ),
        ("topping up phones and laptops", "travel without outlets", "the nightstand", "road trips"),
        (12, 90),
    ),
    Category(
        "bluetooth speakers",
        ("portable Bluetooth speaker", "waterproof speaker", "smart speaker", "party speaker"),
        (
            "IP67 waterproofing",
            "360-degree sound",
            "deep bass radiators",
            "a 24-hour battery",
            "voice assistant support",
        ),
        ("pool parties", "camping trips", "music in the kitchen", "backyard barbecues"),
        (30, 350),
    ),
    Category(
        "sunglasses",
        ("aviator sunglasses", "sport sunglasses", "polarized wayfarers", "glacier glasses"),
        (
            "polarized lenses that cut glare",
            "UV400 protection",
            "a lightweight titanium frame",
            "scratch-resistant lenses",
            "rubber nose pads that stay put",
        ),
        ("bright days on the water", "cycling", "driving into the sun", "high-altitude skiing"),
        (25, 260),
    ),
    Category(
        "camping tents",
        ("backpacking tent", "family camping tent", "ultralight shelter", "pop-up beach tent"),
        (
            "a freestanding aluminium frame",
            "a full-coverage rainfly",
            "two doors and vestibules",
            "a 1.2 kg trail weight",
            "UPF 50 sun protection",
        ),
        (
            "thru-hiking",
            "family weekends at the campground",
            "festival camping",
            "sunny beach days",
        ),
        (60, 700),
    ),
    Category(
        "sleeping bags",
        ("down sleeping bag", "synthetic sleeping bag", "kids' sleeping bag", "quilt"),
        (
            "800-fill-power duck down",
            "a comfort rating of -5 °C",
            "a draft collar",
            "a compression sack",
            "a two-way zipper",
        ),
        ("winter camping", "summer sleepovers", "alpine expeditions", "car camping"),
        (40, 480),
    ),
    Category(
        "cookware sets",
        ("nonstick cookware set", "stainless steel pan set", "cast iron skillet", "Dutch oven"),
        (
            "a PFAS-free ceramic coating",
            "tri-ply construction",
            "induction-ready bases",
            "oven-safe handles up to 260 °C",
            "tempered glass lids",
        ),
        ("searing steaks", "slow-cooked stews", "weeknight family dinners", "baking sourdough"),
        (35, 520),
    ),
    Category(
        "wristwatches",
        ("automatic watch", "dive watch", "field watch", "smartwatch"),
        (
            "a sapphire crystal",
            "200 m water resistance",
            "a Swiss automatic movement",
            "heart-rate and sleep tracking",
            "a luminous dial",
        ),
        ("everyday wear", "scuba diving", "formal occasions", "training for a triathlon"),
        (60, 1800),
    ),
    Category(
        "board games",
        ("strategy board game", "cooperative board game", "party game", "family card game"),
        (
            "2 to 6 players",
            "45-minute rounds",
            "beautifully illustrated cards",
            "simple rules that take minutes to learn",
            "a modular board",
        ),
        ("family game night", "parties with friends", "rainy afternoons", "two-player evenings"),
        (15, 90),
    ),
    Category(
        "plant pots",
        ("self-watering planter", "terracotta pot", "hanging planter", "raised garden bed"),
        (
            "a drainage hole and saucer",
            "a water-level indicator",
            "frost-proof glazed ceramic",
            "recycled plastic that weighs little",
            "macramé hangers",
        ),
        ("herbs on the windowsill", "balcony gardens", "houseplants that need little care"),
        (10, 160),
    ),
    Category(
        "dog beds",
        ("orthopedic dog bed", "donut dog bed", "elevated dog cot", "crate mat"),
        (
            "memory foam that supports old joints",
            "a removable machine-washable cover",
            "raised bolsters to lean on",
            "a chew-resistant base",
            "a waterproof liner",
        ),
        ("senior dogs", "anxious puppies", "long car rides", "hot summer nights"),
        (25, 200),
    ),
)

BRANDS = (
    "Northpeak",
    "Alder & Finch",
    "Brightwater",
    "Cobalt Co.",
    "Driftwood",
    "Emberline",
    "Fieldcraft",
    "Greyhaven",
    "Harbor Lane",
    "Ironbark",
    "Juniper",
    "Kestrel",
    "Lumen",
    "Meridian",
    "Nomad Supply",
)
ADJECTIVES = (
    "Classic",
    "Pro",
    "Lite",
    "Essential",
    "Summit",
    "Urban",
    "Trek",
    "Studio",
    "Daily",
    "Flex",
    "Prime",
    "Voyager",
)
OPENERS = (
    "Built with {f1} and {f2}, this {kind} is made for {use}.",
    "{a_kind} with {f1}, designed for {use}; it also has {f2}.",
    "Made for {use}: {f1} and {f2} in one {kind}.",
    "This {kind} pairs {f1} with {f2}, ideal for {use}.",
)
CLOSERS = (
    "Backed by a two-year warranty.",
    "Available in {colour}.",
    "Ships in plastic-free packaging.",
    "Customers love it for {use2}.",
    "Comes in {colour} and two other colours.",
)
COLOURS = ("charcoal", "sand", "forest green", "navy", "rust orange", "slate blue", "off-white")


def _indefinite(noun: str) -> str:
    """ "A travel mug", "An insulated tumbler" (by spelling: enough for these nouns)."""
    return f"{'An' if noun[0].lower() in 'aeiou' else 'A'} {noun}"


def _product(number: int, category: Category, rng: random.Random) -> Product:
    kind = rng.choice(category.kinds)
    f1, f2 = rng.sample(category.features, 2)
    use, use2 = rng.sample(category.uses, 2) if len(category.uses) > 1 else (category.uses[0],) * 2
    name = f"{rng.choice(BRANDS)} {rng.choice(ADJECTIVES)} {kind.title()}"
    description = " ".join(
        (
            rng.choice(OPENERS).format(kind=kind, a_kind=_indefinite(kind), f1=f1, f2=f2, use=use),
            rng.choice(CLOSERS).format(colour=rng.choice(COLOURS), use2=use2),
        )
    )
    low, high = category.price
    price = round(rng.uniform(low, high), 0) - 0.01
    return Product(
        product_id=f"p-{number:04d}",
        name=name,
        category=category.name,
        description=description,
        price=max(price, 0.99),
    )


def generate_products(*, seed: int = SEED, per_category: int = PER_CATEGORY) -> list[Product]:
    """`per_category` products of every category, shuffled, numbered from p-0001 (seeded)."""
    rng = random.Random(seed)
    drafts = [(c, rng.random()) for c in CATEGORIES for _ in range(per_category)]
    drafts.sort(key=lambda d: d[1])
    return [_product(i, c, rng) for i, (c, _) in enumerate(drafts, start=1)]


def dump_jsonl(items: Iterable[BaseModel]) -> str:
    """One compact JSON object per line, keys in field order (stable across runs)."""
    return "".join(item.model_dump_json() + "\n" for item in items)


def _read_jsonl(path: Path, model: type[M]) -> list[M]:
    items: list[M] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError as e:
        raise ConfigError(f"{path}: missing; it ships with the aibackend package") from e
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            items.append(model.model_validate_json(line))
        except ValidationError as e:
            raise ConfigError(f"{path}:{number}: not a valid {model.__name__}: {e}") from e
    if not items:
        raise ConfigError(f"{path}: holds no {model.__name__} lines")
    return items


def load_products(path: Path = CATALOG_FILE) -> list[Product]:
    """The catalog, validated; product ids must be unique."""
    products = _read_jsonl(path, Product)
    seen: set[str] = set()
    for p in products:
        if p.product_id in seen:
            raise ConfigError(f"{path}: product id {p.product_id} appears twice")
        seen.add(p.product_id)
    return products


def load_queries(path: Path = QUERIES_FILE, categories: Sequence[str] | None = None) -> list[Query]:
    """The evaluation queries; each relevant category must exist in `categories` if given."""
    queries = _read_jsonl(path, Query)
    if categories is not None:
        known = set(categories)
        for q in queries:
            unknown = sorted(set(q.relevant) - known)
            if unknown:
                raise ConfigError(
                    f"{path}: query {q.query!r} names unknown categories {unknown}; "
                    f"known: {', '.join(sorted(known))}"
                )
    return queries


if __name__ == "__main__":
    sys.stdout.write(dump_jsonl(generate_products()))
