"""Item keys are a promise to outputs already on disk: a fixed photo and a fixed clip with
fixed settings keep the key they had before the layers were redrawn (Step 6), so their
outputs still count as done. Step 9 changed the clip's key once, on purpose: its frames now
follow flow estimated at 512 px and `long_term` joined the video settings, so clips re-run. It changed
again later in Step 9: pixels no warp can be trusted for start from the warped output instead of the photo,
and `passes` joined the video settings."""

from __future__ import annotations

from pipeline.batch.manifest import load_manifest
from pipeline.batch.plan import plan

GOLDEN = {
    "chelsea__starry_night+woman-with-hat-matisse.jpg": "4b83d7d83d51fb5a16d9b126c09532fb01b0691f06a5f20a2502051429ab12df",
    "realshort__starry_night.mp4": "e1427fe17d0840718efb41a8627558ef5a0ec9b17919d46ffbf45ce935b62340",
}


def test_item_keys_are_those_of_outputs_made_before(tmp_path, repo):
    styles = repo / "samples/styles"
    manifest = tmp_path / "m.yaml"
    manifest.write_text(f"""
output_dir: out
defaults: {{size: 64, iterations: 20, device: cpu, seed: 3}}
jobs:
  - name: photo
    input: {repo}/samples/photos/chelsea.jpg
    style: [{{path: {styles}/starry_night.jpg, weight: 2}}, {styles}/woman-with-hat-matisse.jpg]
  - name: clip
    input: {repo}/samples/realshort.mp4
    styles: [{styles}/starry_night.jpg]
    video: {{frame_iterations: 10, max_frames: 4}}
""")
    keys = {item.output.name: item.key() for item in plan(load_manifest(manifest))}
    assert keys == GOLDEN
