"""evorl: JAX reinforcement-learning trading workbench (engine; imports no Streamlit)."""

__version__ = "0.1.0"
