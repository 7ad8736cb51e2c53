"""Check what the wheel and the sdist in a folder hold: the compiled extension and the package in
the wheel, its version and its Requires-Dist on torch; the build description and every kernel
source in the sdist."""
import re
import sys
import tarfile
import zipfile
from pathlib import Path

dist = Path(sys.argv[1])
repo = Path(__file__).resolve().parent.parent
version = re.search(r'__version__ = "([^"]+)"', (repo / "cnnkernels" / "_version.py").read_text()).group(1)

(wheel,) = dist.glob(f"cnnkernels-{version}-*.whl")
names = zipfile.ZipFile(wheel).namelist()
assert any(re.fullmatch(r"cnnkernels/_C\..*\.so", n) for n in names), f"no compiled extension in {wheel.name}"
for module in ("__init__", "_ops", "functional", "nn", "convert", "_version"):
    assert f"cnnkernels/{module}.py" in names, f"cnnkernels/{module}.py missing from {wheel.name}"
metadata = zipfile.ZipFile(wheel).read(f"cnnkernels-{version}.dist-info/METADATA").decode()
assert f"Version: {version}" in metadata
requires = re.findall(r"^Requires-Dist: (.*)$", metadata, re.M)
assert any(r.startswith("torch") for r in requires), f"the wheel does not require torch: {requires}"

(sdist,) = dist.glob(f"cnnkernels-{version}.tar.gz")
members = {m.split("/", 1)[1] for m in tarfile.open(sdist).getnames() if "/" in m}
sources = {str(p.relative_to(repo)) for p in (repo / "csrc").rglob("*") if p.is_file()}
missing = ({"CMakeLists.txt", "setup.py", "pyproject.toml", "README.md"} | sources) - members
assert not missing, f"missing from {sdist.name}: {sorted(missing)}"
print(f"{wheel.name}: {len(names)} files, requires {', '.join(requires)}; {sdist.name}: {len(members)} files")
