"""Constants that several layers agree on, kept at the bottom so that none of them owns the rule."""

IGNORE_INDEX = -100
"""A target with this id adds nothing to a loss: padding, prompt tokens in fine-tuning, the unmasked
positions of a masked LM. PyTorch's `cross_entropy` skips it by default (its `ignore_index`)."""
