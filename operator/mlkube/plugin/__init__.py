"""``kubectl mlkube``: a kubectl plugin for people who run models on mlkube.

A client only: it reads and writes the mlkube resources through the apiserver with the
user's kubeconfig, and never imports the controller or the runtime (an import-linter
contract says so), so it installs and starts fast and works against any cluster.
"""
