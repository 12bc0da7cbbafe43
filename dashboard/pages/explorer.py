import streamlit as st

st.title("explorer")
st.info("Under construction.")
