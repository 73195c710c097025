"""hashiflex: trained CNN -> Po2 shift-add IR -> golden simulator -> Verilog -> cost (docs/).

Public API: `hashiflex.quantize_model(model, example_input, config)` (any float CNN from
standard layers -> its Po2 QAT model). Imported lazily, so the CLI starts without torch.
"""


def __getattr__(name: str):
    if name == "quantize_model":
        from .quant.generic import quantize_model
        return quantize_model
    raise AttributeError(f"module 'hashiflex' has no attribute {name!r}")
