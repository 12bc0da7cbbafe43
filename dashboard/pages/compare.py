import streamlit as st

st.title("compare")
st.info("Under construction.")
