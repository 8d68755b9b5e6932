"""The studio: `stylize serve`, a local web page for trying styles on a photo or a clip and
reading nightly runs' reports. Gradio is imported only by `page` and `server`."""
