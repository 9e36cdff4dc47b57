"""losslab: training losses with verified properties."""
