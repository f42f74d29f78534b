"""Rigs: rig map files (`maps/*.toml`, package data), the armature model, binding a map to an armature, the
constraint-aware plan and the solve that writes body24 poses onto real bones. numpy only."""
