// MuseDance's web extension: an upload button on Load Song (MuseDance), and the notes of the nodes that have them.
// ComfyUI serves this file because the pack's __init__.py sets WEB_DIRECTORY = "./web".
// The button posts the chosen file to ComfyUI's /upload/image endpoint (which stores any file in the
// input folder) and selects it in the node's list. It is not saved in workflows (serialize = false).
import { app } from "../../scripts/app.js";
import { api } from "../../scripts/api.js";

const AUDIO_TYPES = "audio/*,.wav,.flac,.mp3,.ogg,.m4a,.aac,.opus";

async function uploadMusic(file, combo) {
  const body = new FormData();
  body.append("image", file, file.name); // the endpoint's field name, whatever the file type
  body.append("type", "input");
  const response = await api.fetchApi("/upload/image", { method: "POST", body });
  if (response.status !== 200) {
    alert(`MuseDance: uploading ${file.name} failed: ${response.status} ${response.statusText}`);
    return;
  }
  const saved = await response.json();
  const name = saved.subfolder ? `${saved.subfolder}/${saved.name}` : saved.name;
  if (!combo.options.values.includes(name)) combo.options.values.push(name);
  combo.value = name;
  combo.callback?.(name);
}

app.registerExtension({
  name: "MuseDance.LoadMusicUpload",
  async nodeCreated(node) {
    if (node.comfyClass !== "MuseDanceLoadMusic") return;
    const combo = node.widgets?.find((w) => w.name === "audio");
    if (!combo) return;
    const picker = document.createElement("input");
    picker.type = "file";
    picker.accept = AUDIO_TYPES;
    picker.style.display = "none";
    picker.onchange = async () => {
      if (picker.files?.length) await uploadMusic(picker.files[0], combo);
      picker.value = "";
    };
    document.body.append(picker);
    // Not a value: kept out of the prompt (options.serialize) and of saved workflows (serialize).
    const button = node.addWidget("button", "choose music to upload", null, () => picker.click(), { serialize: false });
    button.serialize = false;
    const onRemoved = node.onRemoved;
    node.onRemoved = function () {
      picker.remove();
      return onRemoved?.apply(this, arguments);
    };
  },
});

// A MuseDance node's notes (the settings the sampler used, a prompt cut at CLIP's length, music with no
// beats, where the mask came from and why it fell back) come as its "text" output; show them on the node, read-only and never saved with the workflow.
// addDOMWidget is the frontend's public way to put an element on a node (the 2024 web UI has it too).
function notesWidget(node) {
  const area = document.createElement("textarea");
  area.readOnly = true;
  area.className = "comfy-multiline-input";
  area.dataset.musedanceNotes = node.comfyClass;
  const widget = node.addDOMWidget("notes", "musedance_notes", area, {
    getValue: () => area.value,
    setValue: (value) => {
      area.value = value;
    },
    serialize: false,
  });
  widget.serialize = false;
  return widget;
}

app.registerExtension({
  name: "MuseDance.NodeNotes",
  async beforeRegisterNodeDef(nodeType, nodeData) {
    const noted = ["MuseDanceSampler", "MuseDanceReferenceEncode", "MuseDanceBeatExtract", "MuseDanceMask",
      "MuseDanceRender", "MuseDanceSections", "MuseDanceSchedule"];
    if (!noted.includes(nodeData.name)) {
      return;
    }
    const onExecuted = nodeType.prototype.onExecuted;
    nodeType.prototype.onExecuted = function (message) {
      onExecuted?.apply(this, arguments);
      const text = message?.text?.join("\n") ?? "";
      let widget = this.widgets?.find((w) => w.name === "notes");
      if (!widget && !text) return;
      widget ??= notesWidget(this);
      widget.value = text;
    };
  },
});
