import streamlit as st

st.title("benchmark")
st.info("Under construction.")
