"""The style-transfer engine: VGG19 and its weights, losses, the optimisation loop, and the entry points for photos and frames."""
