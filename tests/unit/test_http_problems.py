"""422 answers for a body that is wrong as a whole say what to send instead."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from pydantic import BaseModel

from aibackend.http import PROBLEM_JSON, service_app


class Item(BaseModel):
    name: str


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = service_app("t", "t")

    @app.post("/items")
    async def create(item: Item) -> dict[str, str]:
        return {"name": item.name}

    return TestClient(app)


@pytest.mark.parametrize(
    ("body", "content_type", "message"),
    [
        (
            '{"name": ',
            "application/json",
            "the body is not valid JSON: Expecting value at character 9",
        ),
        ("[1, 2]", "application/json", "the body must be a JSON object, not an array"),
        ('"x"', "application/json", "the body must be a JSON object, not a string"),
        ("3", "application/json", "the body must be a JSON object, not a number"),
        ("null", "application/json", "the body must be a JSON object, not null"),
        ("", "application/json", "a JSON body is required"),
        (
            '{"name": "a"}',
            "text/plain",
            "the body was not read as JSON: send it with `content-type: application/json`",
        ),
    ],
)
def test_a_body_that_is_not_a_json_object_is_named_with_what_to_send(
    client: TestClient, body: str, content_type: str, message: str
) -> None:
    # GIVEN a route that takes a JSON object
    # WHEN the body is malformed, not an object, empty or not sent as JSON
    r = client.post("/items", content=body, headers={"content-type": content_type})
    # THEN a 422 problem says so in words a caller can act on
    assert r.status_code == 422
    assert r.headers["content-type"] == PROBLEM_JSON
    assert r.json()["errors"] == [{"field": "body", "message": message}]
    assert r.json()["detail"] == "1 invalid field(s): body"


def test_field_errors_inside_an_object_keep_their_path_and_message(client: TestClient) -> None:
    # GIVEN an object with a field of the wrong type
    r = client.post("/items", json={"name": ["not", "a", "string"]})
    # THEN the field is named by its path, with pydantic's message
    assert r.status_code == 422
    assert r.json()["errors"] == [{"field": "name", "message": "Input should be a valid string"}]
