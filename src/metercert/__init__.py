"""metercert: smart-meter security certification toolkit.

Layers (bottom to top): cosem (codec) -> security (DLMS protection) -> transport ->
client / meter / tlsprobe / dossier / fleet -> catalog -> checks -> report -> cli.
"""

__version__ = "0.1.0"
