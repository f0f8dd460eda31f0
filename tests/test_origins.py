"""Origins in the tenants file are brought to the form browsers send, or refused."""

from __future__ import annotations

import pytest

from relay.origins import origin


@pytest.mark.parametrize(
    ("text", "sent"),
    [
        ("https://App.Example", "https://app.example"),
        ("https://app.example:443", "https://app.example"),
        ("http://app.example:80", "http://app.example"),
        ("http://127.0.0.1:3000", "http://127.0.0.1:3000"),
        ("https://app.example:8443", "https://app.example:8443"),
        ("http://[::1]:8080", "http://[::1]:8080"),
    ],
)
def test_an_origin_is_written_as_browsers_send_it(text: str, sent: str) -> None:
    assert origin(text) == sent


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("*", "wildcards"),
        ("https://*.app.example", "wildcards"),
        ("https://app.example/", "no path"),
        ("https://app.example/app", "no path"),
        ("https://app.example?x=1", "no path"),
        ("https://user@app.example", "no path"),
        ("app.example", "scheme://host"),
        ("null", "scheme://host"),
        ("file:///index.html", "scheme://host"),
        ("https://app.example:99999", "out of range"),
        ("https://bücher.example", "punycode"),
    ],
)
def test_what_is_not_an_origin_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        origin(text)
