"""cleaner: find the bad data in an image-classification dataset. Run: streamlit run streamlit_app.py"""

import streamlit as st

from cleaner.ui import (
    auth,
    autosave,
    cache,
    compute,
    data_source,
    downloads,
    map_panel,
    page_layout,
    review_area,
    summary,
    team,
)
from cleaner.ui.state import work_for


def main() -> None:
    st.set_page_config(page_title="cleaner: find bad training images", layout="wide")
    cfg = cache.settings()
    user = auth.gate(cfg)  # stops here, having shown only the sign-in page, for anyone not let in
    dataset = data_source.choose_dataset(cfg)
    if dataset is None:
        st.stop()
    work = work_for(dataset, user=user)
    team.team_mode(work, cfg, user)  # signed in: the team's decisions on this dataset, shared as they are made
    params = data_source.map_settings(dataset)
    precomputed = data_source.precomputed(dataset, cfg, params)  # `cleaner scan --precompute` did the heavy step
    thorough = data_source.ranking_is_thorough()
    access = data_source.image_access(cfg)
    summary.dataset_summary(work)
    map_pane, review_pane = page_layout.workspace()
    with map_pane:
        map_slot = map_panel.placeholder(work)  # never another dataset's map while this one's is computed
        sampled = dataset.n > cfg.map_limit  # the map draws the scan's map sample, the rest covers every image
        graph, maps = compute.graph_and_maps(dataset, params, cfg, precomputed, maps=not sampled)
        result = compute.suspects(dataset, graph, work, access, thorough)  # None until the graph is found
        with map_slot():
            if sampled:
                map_panel.sampled_map_panel(work, data_source.map_sample(dataset, cfg), result, cfg.map_limit)
            else:
                map_panel.map_panel(work, maps, result)
    downloads.resume_and_downloads(work, result)
    autosave.panel(work, cfg, user)
    with review_pane:
        summary.suspects_summary(result)
        review_area.review_area(work, graph, result, access, cfg)
    cache.collect_garbage_soon()  # what this run left in cycles (its map data among it)


main()
