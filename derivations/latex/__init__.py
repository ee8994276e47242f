"""LaTeX derivations as posts and lecture notes write them (data, installed with bnderive)."""
