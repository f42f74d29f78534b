"""Motion-capture file formats: BVH and CMU's ASF/AMC readers and the BVH writer. Never imports the engine."""
