"""cleaner: find the bad data in an image-classification dataset. Run: streamlit run streamlit_app.py"""
import streamlit as st

from cleaner import ui


def main() -> None:
    st.set_page_config(page_title="cleaner: find bad training images", layout="wide")
    st.title("cleaner")
    cfg = ui.settings()
    dataset = ui.choose_dataset(cfg)
    if dataset is None:
        st.stop()
    params = ui.map_settings(dataset)
    access = ui.image_access(cfg)
    graph, maps = ui.graph_and_maps(dataset, params, cfg)
    result = ui.suspects(dataset, graph)
    ui.exclusion_sidebar(dataset, result)
    ui.dataset_summary(dataset)
    ui.suspects_summary(result)
    ui.map_panel(dataset, maps, result)
    ui.review_area(dataset, graph, result, access)


main()
