"""The body: the body24 skeleton and its maths (bone lengths, canonical frame, mirroring), rotations and the
temporal filters the engine itself uses. Depends on numpy and scipy only."""
