"""chordkeras: chord recognition networks trained with TensorFlow and Keras."""

import pathlib
import re

from setuptools import find_packages, setup

HERE = pathlib.Path(__file__).parent
VERSION = re.search(r'__version__ = "([^"]+)"', (HERE / "chordkeras" / "__init__.py").read_text()).group(1)

APPLE_SILICON = 'sys_platform == "darwin" and platform_machine == "arm64"'
NOT_APPLE_SILICON = 'sys_platform != "darwin" or platform_machine != "arm64"'
EXPORT = ["tf2onnx>=1.16", "onnx>=1.16,<1.18", "onnxruntime>=1.17", "coremltools>=8.0"]

setup(
    name="chordkeras",
    version=VERSION,
    description="Train and run deep neural networks that recognise the chords in recorded music.",
    long_description=(HERE / "README.md").read_text(encoding="utf-8"),
    long_description_content_type="text/markdown",
    license="MIT",
    packages=find_packages(include=["chordkeras", "chordkeras.*"]),
    # The browser page's own files, copied by python -m chordkeras.export --format web.
    package_data={"chordkeras": ["web/*.html", "web/*.js", "web/*.css"]},
    python_requires=">=3.10,<3.13",
    install_requires=[
        # The TensorFlow 2.16 line is the one on which every package below still loads:
        # tensorflow-io 0.37.1's compiled ops fail to load on TF >= 2.18.
        f"tensorflow==2.16.2; {NOT_APPLE_SILICON}",
        f"tensorflow-macos==2.16.2; {APPLE_SILICON}",
        "tensorflow-io==0.37.1",
        "keras==3.15.1",  # the Keras 3 release tested with TF 2.16.2 here
        "keras-tuner>=1.4",
        "numpy>=1.23,<2",
        "scipy",
        "mir_eval>=0.7",
        "jams>=0.3.4",
        "pretty_midi>=0.2.10",
        "midirenderer>=0.1.3",
        "soundfile>=0.12",
        "pyroomacoustics>=0.7",  # MIT: simulated rooms for the song generator's recording chain
        "tqdm",
        "matplotlib",
    ],
    extras_require={
        "metal": [f"tensorflow-metal==1.1.0; {APPLE_SILICON}"],
        "cuda": ['tensorflow[and-cuda]==2.16.2; sys_platform == "linux"'],
        # Reads the public annotated collections (prepare --mirdata); BSD-3-Clause. Also in "test" so that
        # the suite runs its real loaders.
        "mirdata": ["mirdata>=1.0"],
        # App formats (python -m chordkeras.export; TFLite needs only TensorFlow): tf2onnx (Apache-2.0) converts,
        # onnxruntime (MIT) checks and runs the ONNX file, coremltools (BSD-3-Clause) writes Core ML. onnx stays
        # below 1.18: later releases import ml_dtypes types that TensorFlow 2.16's ml_dtypes 0.3 lacks.
        "export": EXPORT,
        # playwright (Apache-2.0) drives the system's Chromium in the browser test (it downloads no browser
        # of its own unless asked to: the test launches /usr/bin/chromium).
        "test": ["pytest>=7", "librosa>=0.10", "mirdata>=1.0", "playwright>=1.45", *EXPORT],
    },
    classifiers=[
        "Programming Language :: Python :: 3.10",
        "Programming Language :: Python :: 3.11",
        "Programming Language :: Python :: 3.12",
        "Topic :: Multimedia :: Sound/Audio :: Analysis",
        "Topic :: Scientific/Engineering :: Artificial Intelligence",
    ],
)
