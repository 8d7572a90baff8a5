"""The one base of every config model: a misspelt key is an error, field docstrings document.

Kept outside the `dtp_console.config` package on purpose: `stores`, `simulator`,
`api` and `registry` define their own config sections and `config.model`
imports them, so a base inside that package would make each of them import
the whole config package (an import circle).
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

__all__ = ["ConfigModel"]


class ConfigModel(BaseModel):
    """A config section: unknown keys are refused (`extra="forbid"`), and each field's
    docstring is its description (the config reference is generated from them)."""

    model_config = ConfigDict(extra="forbid", use_attribute_docstrings=True)
