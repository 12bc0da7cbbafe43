"""Claims: what the notes say, and what the committed result files in bench/results say about it."""

import pandas as pd
import streamlit as st


from actlab.analysis import claims
from actlab.dashboard.charts import claims as charts

st.title("Claims")
st.caption(f"Each claim from the notes the project grew from, settled by a result file in "
           f"`{claims.results_dir()}` (made by the command shown), or marked with what it still needs. "
           "Nothing here is typed in by hand.")

rows = claims.claim_rows()
table = pd.DataFrame([{k: r[k] for k in ("claim", "source", "measured", "machine", "status")} for r in rows])
st.dataframe(table, hide_index=True, key="claims_table",
             column_config={"claim": st.column_config.TextColumn(width="medium"),
                            "measured": st.column_config.TextColumn(width="large")})

for r in rows:
    with st.expander(f"{r['status']}: {r['claim']}"):
        st.markdown(f"**Source**: note {r['source']}  \n**Result files**: "
                    + (", ".join(f"`{f}`" for f in r["files"]) or "none"))
        st.markdown("**Reproduce**")
        st.code(r["command"], language="bash")
        for m in r["missing"]:
            st.info(f"Still needed: {m}")
        for p in r["problems"]:
            st.error(p)

for p in claims.unassigned_problems():
    st.error(p)

st.subheader("Backbone FFN sparsity: GELU vs relufied, same weights")
result = claims.ffn_result()
if result is None:
    st.info(f"No FFN sparsity result yet: run `{claims.FFN_CMD}`.")
else:
    meta = result["meta"]
    st.caption(f"{meta.get('backbone')} on {meta.get('n_texts')} texts ({meta.get('data')}), eval mode, every real "
               "token; a unit's output counts when it is exactly 0.")
    st.plotly_chart(charts.ffn_sparsity_figure(result), key="ffn_sparsity")
