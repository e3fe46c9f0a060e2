"""Records that cross a process boundary: typed, versioned, append-only (msgspec structs).

The convention every record on a topic or a changelog follows (worker.eventcodec is the model):

- A ``msgspec.Struct`` with ``array_like=True``: encoded as a msgpack array in field order,
  without field names (compact, and decoded and type-checked in C).
- The envelope's first field is ``version``, the *major* layout version. It changes only for an
  incompatible change (a field removed, retyped or moved); a reader rejects a major it does not
  know with a clear error, and such a change needs a migration step (README, "Upgrades").
- Compatible evolution is append-only: a new field goes last, with a default. A newer reader
  fills the default where an older writer sent nothing; an older reader ignores trailing items
  it does not know (msgspec's rule for array-like structs). Old and new workers can therefore
  share a topic during a rolling deploy, in both directions.
- Each released layout is kept as fixtures (tests/fixtures/records_vN/) that a test decodes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

T = TypeVar("T")

ENCODER = msgspec.msgpack.Encoder()  # thread-safe and reusable; encodes tuples as arrays too


def decoder(record_type: type[T]) -> msgspec.msgpack.Decoder[T]:
    """A reusable decoder of ``record_type`` (build once per type: it compiles the schema)."""
    return msgspec.msgpack.Decoder(record_type)


def encode(record: Any) -> bytes:
    """A record (struct, or tuples in its field order) as msgpack bytes."""
    return ENCODER.encode(record)
