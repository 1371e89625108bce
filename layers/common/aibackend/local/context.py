"""A Lambda context object with the attributes handlers and Powertools read."""

from __future__ import annotations

import random
import time
import uuid
from dataclasses import dataclass, field


def new_request_id() -> str:
    """A random (version 4) UUID, without the `os.urandom` system call `uuid.uuid4` makes."""
    return str(uuid.UUID(int=random.getrandbits(128), version=4))


@dataclass
class LocalLambdaContext:
    function_name: str
    memory_limit_in_mb: int
    timeout_s: int
    aws_request_id: str = field(default_factory=new_request_id)
    function_version: str = "$LATEST"
    log_group_name: str = ""
    log_stream_name: str = "local"
    _deadline: float = 0.0

    def __post_init__(self) -> None:
        self._deadline = time.monotonic() + self.timeout_s
        self.log_group_name = self.log_group_name or f"/aws/lambda/{self.function_name}"

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:local:000000000000:function:{self.function_name}"

    @property
    def memory_limit_in_mb_str(self) -> str:
        return str(self.memory_limit_in_mb)

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))
