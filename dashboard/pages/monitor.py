import streamlit as st

st.title("monitor")
st.info("Under construction.")
