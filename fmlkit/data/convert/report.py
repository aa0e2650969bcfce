"""What every `fmlkit convert` route returns: `ConvertReport`, with the records or files it
skipped (`BadRecord`); `printable` keeps a file name from breaking a report's lines, and
`shard_count` counts a finished Parquet writer's shards.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from fmlkit.data.formats.parquet import ParquetDatasetWriter


@dataclass(frozen=True)
class BadRecord:
    """A record or file that was skipped: its key, where it is (byte offset or file), why."""

    key: int
    where: str
    reason: str


@dataclass(frozen=True)
class ConvertReport:
    """What a conversion read and wrote."""

    source: Path
    output: Path
    kind: str  # e.g. "rec → parquet"
    rows: int
    classes: int
    flavour: str
    bad: tuple[BadRecord, ...] = ()
    warnings: tuple[str, ...] = ()
    seconds: float = 0.0
    shards: int | None = None  # Parquet outputs

    def summary(self) -> str:
        flavour = f", flavour {self.flavour}" if self.flavour else ""
        shards = f", {self.shards} shard(s)" if self.shards is not None else ""
        lines = [
            f"Converted {self.source} ({self.kind}{flavour}): {self.rows:,} rows, "
            f"{self.classes:,} classes{shards} in {self.seconds:.1f} s",
        ]
        if self.bad:
            reasons = Counter(b.reason.split(":")[0] for b in self.bad)
            lines.append(f"Skipped {len(self.bad):,} bad records: {dict(reasons)}")
            lines += [f"  key {b.key} ({printable(b.where)}): {b.reason}" for b in self.bad[:5]]
        lines += [f"Warning: {w}" for w in self.warnings]
        lines.append(f"Wrote {self.output}")
        return "\n".join(lines)


def printable(text: str) -> str:
    """``text`` as is, or quoted with escapes when it holds a newline, tab or other control
    character (a file name must not break a report's lines)."""
    return text if text.isprintable() else repr(text)


def shard_count(writer: ParquetDatasetWriter) -> int:
    assert writer.manifest is not None, "the writer was not closed"
    return len(writer.manifest.shards)
