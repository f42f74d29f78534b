"""The one place that knows how Blender's animation data API differs between the releases the add-on supports
(4.2 LTS to 5.2 LTS), as glTF-Blender-IO keeps its version shims. It asks what the running Blender has, never
which version it is, and nothing else in the add-on asks either.

- 4.2, 4.3: an action holds its F-curves itself (`action.fcurves`); an object uses the whole action.
- 4.4 and later: slotted actions. An object animates through one slot of the action (`AnimData.action_slot`); a
  slot's F-curves live in a channelbag of a keyframe strip of a layer. `bpy_extras.anim_utils` has had
  `action_get_channelbag_for_slot` since 4.4 and, from 5.0, `action_ensure_channelbag_for_slot` and
  `animdata_get_channelbag_for_assigned_slot`; where those are missing, the layer and strip are made by hand.
- 5.0 moved bone selection to pose bones (`PoseBone.select`); before, it is `Bone.select`.

A "channelbag" below is whatever holds the `fcurves` of an object's animation: a real channelbag on 4.4+, the
action itself on 4.2/4.3. Both offer `fcurves.find(path, index=)` and iteration; make curves with `fcurve`.
"""
from __future__ import annotations

import bpy
from bpy_extras import anim_utils


def has_slots(action) -> bool:
    return hasattr(action, "slots")


def channelbag(obj):
    """The F-curves the object is animated by now (its action slot's), or None when it has no action."""
    ad = obj.animation_data
    if ad is None or ad.action is None:
        return None
    if not has_slots(ad.action):
        return ad.action
    slot = getattr(ad, "action_slot", None)
    return None if slot is None else _get_bag(ad.action, slot)


def channelbag_of(obj, action):
    """The F-curves of `action` that would animate `obj` (its assigned slot, a slot made for it, or the only
    slot), or None where the action holds none for it. Reads only."""
    if not has_slots(action):
        return action
    slot = _slot_to_read(obj, action)
    return None if slot is None else _get_bag(action, slot)


def ensure_channelbag(obj, action):
    """Assign `action` to `obj` (creating animation data and, on 4.4+, the object's slot) and return the
    F-curves to write into."""
    ad = obj.animation_data or obj.animation_data_create()
    if ad.action != action:
        ad.action = action
    if not has_slots(action):
        return action
    slot = _slot_for(obj, action)
    if ad.action_slot != slot:
        ad.action_slot = slot
    ensure = getattr(anim_utils, "action_ensure_channelbag_for_slot", None)
    if ensure is not None:
        return ensure(action, slot)
    bag = _get_bag(action, slot)
    if bag is not None:
        return bag
    layer = action.layers[0] if len(action.layers) else action.layers.new("Layer")
    strip = layer.strips[0] if len(layer.strips) else layer.strips.new(type="KEYFRAME")
    return strip.channelbags.new(slot)


def _get_bag(action, slot):
    get = getattr(anim_utils, "action_get_channelbag_for_slot", None)
    if get is not None:
        return get(action, slot)
    for layer in action.layers:          # 4.4 had no helper: walk the layers' keyframe strips
        for strip in layer.strips:
            bag = strip.channelbag(slot) if hasattr(strip, "channelbag") else None
            if bag is not None:
                return bag
    return None


def _slot_to_read(obj, action):
    ad = obj.animation_data
    if ad is not None and ad.action == action and getattr(ad, "action_slot", None) is not None:
        return ad.action_slot
    ids = [s for s in action.slots if s.identifier == "OB" + obj.name]
    return ids[0] if ids else (action.slots[0] if len(action.slots) == 1 else None)


def _slot_for(obj, action):
    """The action slot that animates this object: the one in use, one made for it, or a new one."""
    ad = obj.animation_data
    if ad.action == action and ad.action_slot is not None:
        return ad.action_slot
    for slot in action.slots:
        if slot.target_id_type == "OBJECT" and slot.identifier == "OB" + obj.name:
            return slot
    users = [s for s in action.slots if s.target_id_type in ("OBJECT", "UNSPECIFIED")]
    if len(users) == 1 and not any(o.animation_data and o.animation_data.action == action and o != obj
                                   for o in bpy.data.objects):
        return users[0]
    return action.slots.new(id_type="OBJECT", name=obj.name)


def is_selected(pb) -> bool:
    return pb.select if hasattr(pb, "select") else pb.bone.select


def set_selected(pb, value: bool) -> None:
    if hasattr(pb, "select"):
        pb.select = value
    else:
        pb.bone.select = value


def fcurve(bag, path: str, index: int, group: str):
    """The F-curve (path, index) of a channelbag, made in the group named `group` when missing (5.0 takes
    `group_name`, 4.2/4.3 `action_group`; 4.4/4.5 take none, so the group is set on the new curve)."""
    fc = bag.fcurves.find(path, index=index)
    if fc is not None:
        return fc
    for kw in ("group_name", "action_group"):
        try:
            return bag.fcurves.new(path, index=index, **{kw: group})
        except TypeError:
            continue
    fc = bag.fcurves.new(path, index=index)
    fc.group = bag.groups.get(group) or bag.groups.new(group)
    return fc
