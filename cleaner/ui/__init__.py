"""The Streamlit page's pieces: the session's state (`state`), one module per panel, and the cached computations.

The only package of cleaner that imports streamlit.
"""
