"""The shipped recipes (recipes/*.yaml), split by whether they need calibration with GPTQ
Hessians: a rule or default whose calibrator is gptq or awq (`calibrator: gptq`, or a mapping
with `method: gptq`). Read from the text, so a new recipe is classified by what it says, not
by its file name. published_layouts_check.py runs the plain ones, calibrated_recipes_check.py
the calibrated ones."""
import glob
import os
import re

RECIPES_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "recipes")
_CALIBRATED = re.compile(r"^\s*(?:-\s*)?calibrator:\s*(?:\{[^}]*\bmethod:\s*)?(gptq|awq)\b", re.M)


def needs_hessians(path):
    with open(path) as f:
        text = re.sub(r"#.*", "", f.read())
    return bool(_CALIBRATED.search(text))


def shipped():
    return sorted(glob.glob(os.path.join(RECIPES_DIR, "*.yaml")))


def plain():
    return [r for r in shipped() if not needs_hessians(r)]


def calibrated():
    return [r for r in shipped() if needs_hessians(r)]


if __name__ == "__main__":
    for r in shipped():
        print(("calibrated " if needs_hessians(r) else "plain      ") + os.path.basename(r))
