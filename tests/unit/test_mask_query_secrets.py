"""`mask_url` hides credentials carried in query parameters, not only in user info."""

from __future__ import annotations

import pytest

from dtp_console.urls import mask_url


@pytest.mark.parametrize(
    ("text", "masked"),
    [
        ("https://h:8470/api?token=s3cr3t&n=1", "https://h:8470/api?token=***&n=1"),
        ("GET /x?access_token=abc#frag", "GET /x?access_token=***#frag"),
        (
            "postgresql://db/dtp?sslmode=require&sslpassword=pw",
            "postgresql://db/dtp?sslmode=require&sslpassword=***",
        ),
        ("u?API_KEY=k1;pwd=p2", "u?API_KEY=***;pwd=***"),
        (
            "s3://b/k?X-Amz-Signature=ab12&X-Amz-Credential=AKIA/x",
            "s3://b/k?X-Amz-Signature=***&X-Amz-Credential=***",
        ),
        ("https://u:p@h/?client_secret=z", "https://***@h/?client_secret=***"),
        ("retry?attempt=3&tokens_left=2", "retry?attempt=3&tokens_left=2"),
        ("no url here, token=abc", "no url here, token=abc"),
    ],
)
def test_query_credentials_are_masked(text: str, masked: str) -> None:
    assert mask_url(text) == masked
