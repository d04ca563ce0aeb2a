"""Keyboard shortcuts that work the moment a panel opens."""

from __future__ import annotations

import streamlit as st

# Streamlit ignores a shortcut typed while an input has the focus, radios and checkboxes included: a click on the
# view switch would leave the keys dead until the next click elsewhere. A radio or checkbox clicked with the mouse
# gives up the focus; one reached with the keyboard keeps it, as its user moves on with the keyboard.
_RELEASE_FOCUS = """<script>
(() => {
  const held = e => !!e && e.tagName === "INPUT" && (e.type === "radio" || e.type === "checkbox");
  if (held(document.activeElement)) document.activeElement.blur();
  if (window.__cleanerKeysWork) return;
  window.__cleanerKeysWork = true;
  document.addEventListener("click", e => {
    if (e.detail === 0) return;  // a click made with the keyboard (space): its user moves on with the keyboard
    setTimeout(() => { if (held(document.activeElement)) document.activeElement.blur(); }, 0);
  }, true);
})();
</script>"""


def keys_work_at_once() -> None:
    """Draw with a panel whose buttons have shortcuts (the review queue, the audit)."""
    st.html(_RELEASE_FOCUS, unsafe_allow_javascript=True)
