"""Models across the border with other libraries: Hugging Face transformers folders, both ways.

`export_hf` writes a sokhan model as a transformers GPT-2 or Llama folder (`hf_export`), `import_hf`
reads a transformers GPT-2 or Llama checkpoint into a sokhan model folder (`hf_import`). Both
go through one table of where each weight lives (`hf_layout`) and share the tokenizer rules
(`hf_tokenizer`). transformers itself is never imported: the files are safetensors and JSON.
"""

from sokhan.interop.hf_export import Exported, export_hf, hf_architecture
from sokhan.interop.hf_import import Imported, import_hf

__all__ = ["Exported", "Imported", "export_hf", "hf_architecture", "import_hf"]
