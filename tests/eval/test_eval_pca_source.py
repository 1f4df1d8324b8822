"""The one rule for the whitening's learning collection."""

from __future__ import annotations

import pytest

from dasr.eval.pca_source import DEFAULT_PCA_SOURCE, pca_source


def test_defaults_pair_the_shared_sets_and_fall_back_to_paris_landmarks():
    assert pca_source("instance-track") == "paris-landmarks"
    assert pca_source("paris-landmarks") == "instance-track"
    assert pca_source("oxford5k") == pca_source("instre", "") == "paris-landmarks"
    assert DEFAULT_PCA_SOURCE == {"instance-track": "paris-landmarks", "paris-landmarks": "instance-track",
                                  "paris6k-subset": "instance-track",  # made of paris-landmarks' images
                                  # scenes from paris-landmarks (refused as a source), queries from instance-track
                                  "copy-paste": "instance-track", "copy-paste-feathered": "instance-track"}


def test_requested_source_wins_but_never_the_searched_collection():
    assert pca_source("oxford5k", "paris6k") == "paris6k"
    with pytest.raises(ValueError, match="another collection"):
        pca_source("paris-landmarks", "paris-landmarks")
    with pytest.raises(ValueError, match="unknown whitening source 'ukbench'"):
        pca_source("oxford5k", "ukbench")
