"""`aib build embeddings` and `aib endpoints ...`: build, serve and publish the embeddings model.

Wired into `aibackend.cli.build_parser` by `register(sub)`.
"""

from __future__ import annotations

import argparse
import sys

from aibackend.embeddings.endpoints import EMBEDDINGS
from aibackend.settings import PlatformSettings

#: What `aib build` can build; the embeddings model is the one built outside `aib train`.
BUILDABLE = (EMBEDDINGS.model,)


def cmd_build(args: argparse.Namespace) -> int:
    from aibackend.embeddings.build import build_embeddings

    settings = PlatformSettings.from_env()
    settings.state_dir.mkdir(parents=True, exist_ok=True)
    mv = build_embeddings(settings, promote=not args.no_promote)
    print(
        f"built {mv.name} v{mv.version}: product search nDCG@10 "
        f"{mv.card.metrics['ndcg_at_10']:.3f} (BM25 {mv.card.baselines['bm25']['ndcg_at_10']:.3f})"
        + ("; `aib dev` serves it" if not args.no_promote else "")
    )
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """The server in the foreground on the local registry's folder (what `aib dev` runs)."""
    from aibackend.embeddings.package import local_folder
    from aibackend.embeddings.server import main as serve

    version, folder = local_folder(args.name, PlatformSettings.from_env(), args.version)
    print(f"serving {args.name} v{version} from {folder} on http://{args.host}:{args.port}")
    argv = ["--model-dir", str(folder), "--host", args.host, "--port", str(args.port)]
    if args.backend:
        argv += ["--backend", args.backend]
    return serve(argv)


def cmd_push(args: argparse.Namespace) -> int:
    from aibackend.embeddings.package import push

    if not args.bucket:
        print("push needs --bucket (the AibModels stack output ModelBucketName)", file=sys.stderr)
        return 2
    push(
        args.name,
        local_settings=PlatformSettings.from_env(),
        bucket=args.bucket,
        table=args.table,
        version=args.version,
        promote=args.promote,
    )
    return 0


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add `build` and `endpoints` to the `aib` command line."""
    b = sub.add_parser(
        "build", help="build a model outside `aib train` (embeddings: needs `make embeddings`)"
    )
    b.add_argument("model", choices=BUILDABLE)
    b.add_argument("--no-promote", action="store_true", help="register without promoting")
    b.set_defaults(func=cmd_build)

    e = sub.add_parser("endpoints", help="SageMaker-contract inference servers (embeddings)")
    e_sub = e.add_subparsers(dest="endpoints_command", required=True)
    s = e_sub.add_parser("serve", help="run an endpoint's server in the foreground")
    s.add_argument("name", choices=BUILDABLE)
    s.add_argument("--version", type=int, help="local version (default: production)")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8080)
    s.add_argument("--backend", choices=["onnx", "torch"])
    s.set_defaults(func=cmd_serve)
    p = e_sub.add_parser(
        "push", help="publish a local version and its model.tar.gz to the AWS model bucket"
    )
    p.add_argument("name", choices=BUILDABLE)
    p.add_argument("--version", type=int, help="local version (default: production)")
    p.add_argument("--bucket", help="the AibModels stack output ModelBucketName")
    p.add_argument("--table", default="aib-model-registry", help="the AWS registry table")
    p.add_argument("--promote", action="store_true", help="also set AWS production")
    p.set_defaults(func=cmd_push)
