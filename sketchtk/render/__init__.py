"""Rendering of stroke-3 sketches: SVG (svgwrite), cairo rasterisation and a fast TF rasteriser."""
