"""ActLab dashboard: `streamlit run dashboard/app.py`. Pages are thin views over core/."""
from pathlib import Path

import streamlit as st


st.set_page_config(page_title="ActLab", page_icon=":material/ssid_chart:", layout="wide")

# Views live in views/, not pages/: Streamlit treats a pages/ folder beside the entry script as
# the legacy multipage app and lists file names in the sidebar instead of these titles.
PAGES = Path(__file__).parent / "views"
explorer = st.Page(PAGES / "explorer.py", title="Activation explorer", icon=":material/show_chart:", url_path="explorer")
# The default page is served at "/" and its url_path is ignored, so a page that is the default has
# no deep link. A hidden default that switches to the explorer keeps /explorer a working link.
home = st.Page(lambda: st.switch_page(explorer), title="ActLab", url_path="home", default=True, visibility="hidden")
nav = st.navigation([
    home,
    explorer,
    st.Page(PAGES / "monitor.py", title="Training monitor", icon=":material/monitor_heart:", url_path="monitor"),
    st.Page(PAGES / "compare.py", title="Compare runs", icon=":material/compare_arrows:", url_path="compare"),
    st.Page(PAGES / "benchmark.py", title="Benchmark", icon=":material/speed:", url_path="benchmark"),
    st.Page(PAGES / "claims.py", title="Claims", icon=":material/fact_check:", url_path="claims"),
])
nav.run()
