"""Item keys are a promise to outputs already on disk: a fixed photo and a fixed clip with
fixed settings keep the key they had before the layers were redrawn (Step 6), so their
outputs still count as done. Step 9 changed the clip's key once, on purpose: its frames now
follow flow estimated at 512 px and `long_term` joined the video settings, so clips re-run. It changed
again later in Step 9: pixels no warp can be trusted for start from the warped output instead of the photo,
and `passes` joined the video settings. Step 10 changed both, photos included, once: the style term is divided by its
value at the unstylized photo, the default balance is weaker (style_weight 3 instead of 30) and `strength` joined the
settings, so every picture changes (the README's changelog); the clip's temporal_weight fell to 150 with it.
Step 9 changed both once more: `tv_weight` went from 1 to 10, which steadies small video and
changes every picture a little. Then the clip's alone: temporal_weight fell from 150 to 75, which
brings video frames closer to photos."""

from __future__ import annotations

from pipeline.batch.manifest import load_manifest
from pipeline.batch.plan import plan

GOLDEN = {
    "chelsea__starry_night+woman-with-hat-matisse.jpg": "c43002e02def1efa326c8461a0818dbb3a30840f9341a6dac12d3229c674b364",
    "realshort__starry_night.mp4": "39ad3dd6df99937c0f34c9f4563feefe478ff801a611c23e4ad9905f3303c723",
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
