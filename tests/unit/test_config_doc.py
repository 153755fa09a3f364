"""docs/config.md is generated from the config models; it must cover every key."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel

from nethook.config import Config
from nethook.config_doc import reference

DOC = Path(__file__).resolve().parents[2] / "docs" / "config.md"


def _keys(model: type[BaseModel]) -> set[str]:
    out = set()
    for name, field in model.model_fields.items():
        out.add(field.alias or name)
    return out


def test_reference_is_up_to_date() -> None:
    assert DOC.read_text() == reference(), (
        "docs/config.md is stale: run `nethook config reference > docs/config.md`"
    )


def test_every_top_level_and_section_key_is_documented() -> None:
    text = DOC.read_text()
    for key in _keys(Config):
        assert f"| `{key}` |" in text
    for section in ("server", "store", "security", "dispatcher", "devices", "notify"):
        model = Config.model_fields[section].annotation
        assert isinstance(model, type) and issubclass(model, BaseModel)
        for key in _keys(model):
            assert f"| `{section}.{key}` |" in text, f"{section}.{key} missing"
