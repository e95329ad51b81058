"""Load moeq bitsandbytes 4-bit exports (NF4 / FP4, `export: bnb`) into transformers with the
routed experts kept 4-bit."""
from .load import LoaderError, load_bnb_export
from .memory import model_bytes
from .cpu_kernels import pin_portable_cpu_kernels
from .packed import PackedExpertWeight

__all__ = ["load_bnb_export", "model_bytes", "LoaderError", "PackedExpertWeight", "pin_portable_cpu_kernels"]
__version__ = "0.1.0"
