# Types of the compiled module (src/lib.rs); maturin ships this file and py.typed.

class Checker:
    def __init__(
        self,
        types: list[tuple[str, bool, list[tuple[str, str, bool, int, int]]]],
        methods: list[str],
        method_needing_timestamp: str,
        key_field: str,
        clip_field: str,
        max_id: int,
        earliest_us: int,
        ahead_us: int,
        record_headers: tuple[str, str],
    ) -> None: ...
    def check(
        self,
        body: bytes,
        max_events: int,
        received_us: int,
        received_text: str,
        now_ms: int,
        seed: int,
    ) -> (
        tuple[list[int], list[bytes], list[bytes], list[int | None], list[int], list[str]]
        | None
    ): ...
    def check_record(
        self,
        type_index: int,
        body: bytes,
        received_us: int,
        received_text: str,
        now_ms: int,
        seed: int,
        shared: tuple[tuple[tuple[str, bytes], ...], tuple[tuple[str, bytes], ...]],
    ) -> (
        tuple[bytes, bytes, tuple[tuple[str, bytes], ...], str, int | None, int] | None
    ): ...
