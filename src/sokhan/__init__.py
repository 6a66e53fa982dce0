"""sokhan (سخن): a Persian-first workbench for language models."""

__version__ = "0.1.0"


def __getattr__(name: str):  # keep `import sokhan` light: torch loads only when the API is used
    if name == "LanguageModel":
        from sokhan.api import LanguageModel
        return LanguageModel
    raise AttributeError(name)


__all__ = ["LanguageModel", "__version__"]
