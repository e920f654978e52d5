"""Perception, from frame to objects: the detection record and protocol, the learned and RAM
detectors, post-processing, the z_what classifier, tracking into slots, observations and labels.
"""
