"""Figures of the clusterability experiments, by subject (matplotlib, object-oriented API only).

- :mod:`~harness.report.figures.clustering`: one network's n-cut against its nulls, the
  factors grid, significance against K, random init against trained, learning curves;
- :mod:`~harness.report.figures.lesions`: single and double lesions, taxonomy, dependencies;
- :mod:`~harness.report.figures.networks`: a clustered network drawn neuron by neuron;
- :mod:`~harness.report.figures.activations`: correlation pictures of clusters (§7.2);
- :mod:`~harness.report.figures.features`: feature-visualisation images of sub-clusters;
- :mod:`~harness.report.figures.common`: formats, style, colours and saving shared by all.

Every ``plot_*`` function takes plain arrays or DataFrames and an output path stem (no
extension), writes one file per requested format (PNG and SVG by default) atomically and
returns the paths; the same inputs give byte-identical files. The functions know column
names and the paper's vocabulary (phases, null models, lesion taxonomy), never study names,
model tags or numbers of clusters: those come from the experiment that calls them.

Import the functions from :mod:`harness.report`.
"""
