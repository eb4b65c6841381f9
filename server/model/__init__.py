"""The bottom layer: dataclass models, the error tree, name rules, the validation report and the
ObjectStore interface. It imports nothing of ours, so every other layer may import it."""
