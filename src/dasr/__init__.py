"""DASR: Deeply Activated Salient Regions for instance search (Xiao & Zhao)."""

__version__ = "0.1.0"
