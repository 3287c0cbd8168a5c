"""ComfyUI's two workflow formats in plain Python: turn the web UI's format into the API format, and check it.

UI format: the LiteGraph JSON the web UI saves and users drag in. Widget values sit in a list
(`widgets_values`) in the order the node declares its widget inputs, links are
`[id, from_node, from_slot, to_node, to_slot, type]`.
API format: what POST /prompt takes, `{node_id: {"class_type", "inputs", "_meta"}}`.

Both are read against object_info, the JSON of GET /object_info (per class: `input.required` and
`input.optional` as `{name: [type or combo list, options]}`, `input_order` on servers since 2024,
`output`, `output_name`, `display_name`). Nothing here imports ComfyUI.

The frontend's conventions followed (its graphToPrompt and widget code, 2024-2025):
  - every INT, FLOAT, STRING, BOOLEAN and combo input is a widget (optional ones too), unless it
    has `forceInput`; other types (IMAGE, MASK, AUDIO, MUSEDANCE_*) are link-only sockets;
  - an INT named seed or noise_seed, or an input with `control_after_generate`, is followed by the
    control widget's value ("fixed", "randomize", ...), which is not sent to the server;
  - a combo with `image_upload` / `video_upload` / `animated_image_upload` / `audio_upload` gets an
    upload button, added after the node's required inputs; its value is not sent either;
  - a widget fed by a link keeps its value in widgets_values and appears in the node's `inputs`
    with `"widget": {"name": ...}`; the link's value wins.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

WIDGET_TYPES = ("INT", "FLOAT", "STRING", "BOOLEAN")
CONTROL_VALUES = ("fixed", "increment", "decrement", "randomize")
UPLOAD_OPTIONS = ("image_upload", "video_upload", "animated_image_upload", "audio_upload")
SEED_NAMES = ("seed", "noise_seed")

# What a widgets_values entry holds: an input's value, or a frontend-only value after one.
VALUE, CONTROL, UPLOAD = "value", "control_after_generate", "upload"


@dataclass(frozen=True)
class WidgetSlot:
    """One entry of a node's widgets_values."""

    name: str  # the input it belongs to
    kind: str  # VALUE, CONTROL or UPLOAD
    type: str = ""  # INT, FLOAT, STRING, BOOLEAN or COMBO (VALUE only)
    options: dict | None = None
    choices: list | None = None  # a combo's values
    required: bool = True

    def default(self):
        """What the frontend gives this widget when a saved workflow has no value for it."""
        if "default" in (self.options or {}):
            return self.options["default"]
        return self.choices[0] if self.choices else None


def group_inputs(info: dict, group: str) -> list[tuple[str, list]]:
    """(name, spec) of the node's "required" or "optional" inputs, in declared order."""
    declared = info.get("input", {}).get(group) or {}
    return [(name, declared[name]) for name in (info.get("input_order") or {}).get(group) or declared]


def declared_inputs(info: dict) -> Iterator[tuple[str, list, bool]]:
    """(name, spec, required) for each input in the node's declared order: required, then optional."""
    for group in ("required", "optional"):
        for name, spec in group_inputs(info, group):
            yield name, spec, group == "required"


def _options(spec: list) -> dict:
    return spec[1] if len(spec) > 1 and isinstance(spec[1], dict) else {}


def widget_type(spec: list) -> str | None:
    """The widget type of an input spec (COMBO for a list of choices), or None for a link-only input."""
    kind = spec[0]
    if isinstance(kind, list) or kind == "COMBO":  # "COMBO" + options["options"]: ComfyUI's newer node schema
        return "COMBO"
    if kind in WIDGET_TYPES and not _options(spec).get("forceInput"):
        return kind
    return None


def input_type(spec: list) -> str:
    """The type a link into this input must carry."""
    return "COMBO" if widget_type(spec) == "COMBO" else spec[0]


def widget_slots(info: dict) -> list[WidgetSlot]:
    """The entries a UI node's widgets_values holds for a node of this object_info, in order."""
    slots: list[WidgetSlot] = []
    for group in ("required", "optional"):
        upload = False
        for name, spec in group_inputs(info, group):
            kind = widget_type(spec)
            if kind is None:
                continue
            options = _options(spec)
            choices = (spec[0] if isinstance(spec[0], list) else options.get("options")) if kind == "COMBO" else None
            slots.append(WidgetSlot(name, VALUE, kind, options, choices, group == "required"))
            if (kind == "INT" and name in SEED_NAMES) or options.get("control_after_generate"):
                slots.append(WidgetSlot(name, CONTROL))
            upload |= kind == "COMBO" and any(options.get(key) for key in UPLOAD_OPTIONS)
        if upload and group == "required":  # the frontend adds the button as one more required input
            slots.append(WidgetSlot(UPLOAD, UPLOAD))
    return slots


def _title(node: dict, info: dict) -> str:
    return node.get("title") or info.get("display_name") or node["type"]


def saved_values(node: dict, slots: list[WidgetSlot]) -> list:
    """A node's widgets_values, completed as the frontend completes a workflow saved before the node gained
    optional widgets (declared after all others): each missing one takes its default."""
    values = list(node.get("widgets_values") or [])
    missing = slots[len(values):]
    if missing and all(slot.kind == VALUE and not slot.required and slot.default() is not None for slot in missing):
        values += [slot.default() for slot in missing]
    return values


def ui_to_api(ui_workflow: dict, object_info: dict) -> dict:
    """The API-format prompt the web UI would send for this UI workflow (as its graphToPrompt does).

    Widget values are named by the node's declared inputs, the control and upload values left out,
    linked inputs become `[str(from_node), from_slot]`, and titles go to `_meta`. ValueError for a
    node ComfyUI does not know, a muted or bypassed node, or widget values that do not fit.
    """
    links = {link[0]: link for link in ui_workflow.get("links") or []}
    prompt: dict[str, Any] = {}
    for node in sorted(ui_workflow["nodes"], key=lambda n: n["id"]):
        label = f"node {node['id']} ({node['type']})"
        info = object_info.get(node["type"])
        if info is None:
            raise ValueError(f"{label}: unknown node type; the server lists no {node['type']!r}.")
        if node.get("mode", 0) != 0:
            raise ValueError(f"{label} is muted or bypassed (mode {node['mode']}); only active nodes are converted.")
        slots = widget_slots(info)
        values = saved_values(node, slots)
        if len(values) != len(slots):
            raise ValueError(f"{label}: {len(values)} widgets_values for {len(slots)} widgets "
                             f"({', '.join(s.name for s in slots)}).")
        inputs = {slot.name: value for slot, value in zip(slots, values) if slot.kind == VALUE}
        for socket in node.get("inputs") or []:
            if socket.get("link") is None:
                continue
            if socket["link"] not in links:
                raise ValueError(f"{label}: input {socket['name']!r} names link {socket['link']}, which is missing.")
            link = links[socket["link"]]
            inputs[socket["name"]] = [str(link[1]), link[2]]
        prompt[str(node["id"])] = {"class_type": node["type"], "inputs": inputs, "_meta": {"title": _title(node, info)}}
    return prompt


def check_ui_workflow(ui_workflow: dict, object_info: dict) -> list[str]:
    """What ComfyUI would refuse or the frontend would misread in a UI workflow; empty when it is sound.

    Checked: every node type exists; widget values match the declared widget inputs in number,
    type and range (combo values among the choices); sockets name declared inputs and outputs of
    their declared types; every required link-only input is connected; every link is recorded at
    both ends and joins an output to an input of the same type.
    """
    problems: list[str] = []
    nodes: dict[int, dict] = {}
    for node in ui_workflow.get("nodes") or []:
        if node["id"] in nodes:
            problems.append(f"node id {node['id']} is used twice.")
        nodes[node["id"]] = node
    for node in nodes.values():
        label = f"node {node['id']} ({node['type']})"
        info = object_info.get(node["type"])
        if info is None:
            problems.append(f"{label}: unknown node type; the server lists no {node['type']!r} (is its node pack installed?).")
            continue
        problems += [f"{label}: {p}" for p in _widget_problems(node, info)]
        problems += [f"{label}: {p}" for p in _socket_problems(node, info)]
    problems += _link_problems(ui_workflow, nodes, object_info)
    link_ids = [link[0] for link in ui_workflow.get("links") or []]
    if nodes and ui_workflow.get("last_node_id", 0) < max(nodes):
        problems.append(f"last_node_id {ui_workflow.get('last_node_id')} is below the highest node id {max(nodes)}.")
    if link_ids and ui_workflow.get("last_link_id", 0) < max(link_ids):
        problems.append(f"last_link_id {ui_workflow.get('last_link_id')} is below the highest link id {max(link_ids)}.")
    return problems


def _widget_problems(node: dict, info: dict) -> list[str]:
    slots = widget_slots(info)
    values = saved_values(node, slots)
    if len(values) != len(slots):
        expected = ", ".join(s.name if s.kind == VALUE else f"({s.kind})" for s in slots)
        return [f"{len(values)} widgets_values for {len(slots)} widgets: {expected}."]
    problems = []
    for slot, value in zip(slots, values):
        if slot.kind == CONTROL and value not in CONTROL_VALUES:
            problems.append(f"{slot.name}'s control_after_generate is {value!r}; expected one of {CONTROL_VALUES}.")
        elif slot.kind == VALUE:
            problem = _value_problem(slot, value)
            if problem:
                problems.append(f"widget {slot.name!r} {problem}")
    return problems


def _value_problem(slot: WidgetSlot, value: Any) -> str | None:
    if slot.type == "COMBO":
        choices = slot.choices or []
        return None if value in choices else f"is {value!r}, not one of {choices}."
    is_number = isinstance(value, (int, float)) and not isinstance(value, bool)
    fits = {
        "INT": isinstance(value, int) and not isinstance(value, bool),
        "FLOAT": is_number,
        "STRING": isinstance(value, str),
        "BOOLEAN": isinstance(value, bool),
    }[slot.type]
    if not fits:
        return f"is {value!r} ({type(value).__name__}); the input is {slot.type}."
    low, high = slot.options.get("min"), slot.options.get("max")
    if is_number and ((low is not None and value < low) or (high is not None and value > high)):
        return f"is {value!r}, outside its range [{low}, {high}]."
    return None


def _socket_problems(node: dict, info: dict) -> list[str]:
    problems = []
    declared = {name: (spec, required) for name, spec, required in declared_inputs(info)}
    connected = set()
    for socket in node.get("inputs") or []:
        name = socket["name"]
        if name not in declared:
            problems.append(f"input {name!r} is not declared by the node.")
            continue
        spec = declared[name][0]
        if widget_type(spec) is not None and "widget" not in socket:
            problems.append(f"input {name!r} is a widget; its socket needs \"widget\": {{\"name\": {name!r}}}.")
        if not _same_type(socket.get("type"), input_type(spec)):
            problems.append(f"input {name!r} is listed as {socket.get('type')}, declared {input_type(spec)}.")
        if socket.get("link") is not None:
            connected.add(name)
    for name, (spec, required) in declared.items():
        if required and widget_type(spec) is None and name not in connected:
            problems.append(f"required input {name!r} ({spec[0]}) is not connected.")
    outputs = [o.get("type") for o in node.get("outputs") or []]
    declared_outputs = list(info.get("output") or [])
    # A host may declare more outputs than the file saved (Save Dance Video's VIDEO where ComfyUI has that
    # type); the frontend adds them. The saved ones must be the host's first ones.
    if outputs != declared_outputs[: len(outputs)] or not outputs and declared_outputs:
        problems.append(f"outputs {outputs} differ from the declared {declared_outputs}.")
    return problems


def _link_problems(ui_workflow: dict, nodes: dict[int, dict], object_info: dict) -> list[str]:
    problems = []
    seen: set = set()
    for link in ui_workflow.get("links") or []:
        link_id, source_id, source_slot, target_id, target_slot, link_type = link[:6]
        label = f"link {link_id} ({source_id}:{source_slot} -> {target_id}:{target_slot})"
        if link_id in seen:
            problems.append(f"{label}: the link id is used twice.")
        seen.add(link_id)
        source, target = nodes.get(source_id), nodes.get(target_id)
        if source is None or target is None:
            problems.append(f"{label}: joins a node that does not exist.")
            continue
        outputs, inputs = source.get("outputs") or [], target.get("inputs") or []
        if source_slot >= len(outputs) or link_id not in (outputs[source_slot].get("links") or []):
            problems.append(f"{label}: node {source_id} does not list it at output {source_slot}.")
        if target_slot >= len(inputs) or inputs[target_slot].get("link") != link_id:
            problems.append(f"{label}: node {target_id} does not list it at input {target_slot}.")
            continue
        source_info, target_info = object_info.get(source["type"]), object_info.get(target["type"])
        if source_info is None or target_info is None:
            continue  # reported as an unknown node type
        declared_outputs = source_info.get("output") or []
        if source_slot >= len(declared_outputs):
            problems.append(f"{label}: {source['type']} has no output {source_slot}.")
            continue
        name = inputs[target_slot]["name"]
        spec = dict((n, s) for n, s, _ in declared_inputs(target_info)).get(name)
        if spec is None:
            continue  # reported as an undeclared input
        types = {"link": link_type, f"{source['type']} output {source_slot}": declared_outputs[source_slot],
                 f"{target['type']} input {name!r}": input_type(spec)}
        if not all(_same_type(a, b) for a in types.values() for b in types.values()):
            problems.append(f"{label}: types differ: " + ", ".join(f"{k} {v}" for k, v in types.items()) + ".")
    for node in nodes.values():
        for socket in node.get("inputs") or []:
            if socket.get("link") is not None and socket["link"] not in seen:
                problems.append(f"node {node['id']} input {socket['name']!r} names link {socket['link']}, which is missing.")
    return problems


def _same_type(a: Any, b: Any) -> bool:
    """ComfyUI's rule: equal, or either is "*" (any), or comma-separated alternatives that share one."""
    if a == b or a == "*" or b == "*":
        return True
    if isinstance(a, str) and isinstance(b, str):
        return bool(set(a.split(",")) & set(b.split(",")))
    return False
