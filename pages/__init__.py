"""The app's pages (Streamlit scripts routed by app.py), installed as ``kasp.app.pages``; see kasp/ground/resources.py."""
