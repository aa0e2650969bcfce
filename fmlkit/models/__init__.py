"""Models: embedding backbones and the margin heads / metric losses that train them."""
