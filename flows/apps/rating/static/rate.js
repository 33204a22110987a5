// Rating page: fetch the next task, play both videos in sync, send one vote per task.
"use strict";

const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);

// Two videos that start together, share play/pause and restart together once both reached the end
// (native `loop` would let them drift apart when their lengths differ slightly).
class SyncedPair {
  constructor(left, right, button) {
    this.videos = [left, right];
    this.button = button;
    this.playing = false;
    this.generation = 0;
    this.starts = 0;
    for (const video of this.videos) {
      video.muted = true;
      video.loop = false;
      video.addEventListener("ended", () => this.onEnded());
    }
    left.addEventListener("timeupdate", () => this.correctDrift());
    button.addEventListener("click", () => this.toggle());
  }

  async load(leftUrl, rightUrl) {
    const generation = ++this.generation;
    this.pause();
    const [left, right] = this.videos;
    left.src = leftUrl;
    right.src = rightUrl;
    const results = await Promise.all(this.videos.map(whenPlayable));
    if (generation !== this.generation) return; // a newer task replaced this one meanwhile
    results.forEach((ok, i) => { $(i === 0 ? "error-left" : "error-right").hidden = ok; });
    this.restart();
  }

  restart() {
    this.starts += 1;
    document.body.dataset.starts = String(this.starts); // lets tests see that loops restart together
    for (const video of this.videos) video.currentTime = 0;
    this.play();
  }

  play() {
    this.playing = true;
    this.button.textContent = "Pause";
    for (const video of this.videos) {
      if (video.ended) video.currentTime = 0;
      video.play().catch(() => {}); // a video that cannot play must not block the other
    }
  }

  pause() {
    this.playing = false;
    this.button.textContent = "Play";
    for (const video of this.videos) video.pause();
  }

  toggle() { this.playing ? this.pause() : this.play(); }

  onEnded() {
    const usable = this.videos.filter((v) => !v.error);
    if (this.playing && usable.every((v) => v.ended)) this.restart();
  }

  correctDrift() {
    const [left, right] = this.videos;
    if (!this.playing || left.error || right.error) return;
    if (Math.abs(left.duration - right.duration) > 0.05) return; // different lengths: only sync restarts
    if (Math.abs(left.currentTime - right.currentTime) > 0.15 && !right.ended) right.currentTime = left.currentTime;
  }
}

function whenPlayable(video) {
  return new Promise((resolve) => {
    if (video.readyState >= 3) return resolve(true);
    const done = (ok) => {
      video.removeEventListener("canplay", onOk);
      video.removeEventListener("error", onError);
      resolve(ok);
    };
    const onOk = () => done(true);
    const onError = () => done(false);
    video.addEventListener("canplay", onOk);
    video.addEventListener("error", onError);
  });
}

const player = new SyncedPair($("video-left"), $("video-right"), $("play-pause"));
const choiceButtons = Array.from(document.querySelectorAll("button[data-choice]"));
let current = null;
let busy = false;

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function render(state) {
  $("progress-bar").max = state.total;
  $("progress-bar").value = state.done;
  if (!state.task) {
    current = null;
    player.pause();
    $("progress-text").textContent = `All ${state.total} done`;
    $("task").hidden = true;
    $("done").hidden = false;
    document.body.dataset.state = "done";
    return;
  }
  current = state.task;
  $("progress-text").textContent = `Pair ${state.done + 1} of ${state.total}`;
  $("question").textContent = state.task.question_text;
  $("prompt").textContent = state.task.prompt;
  $("prompt-line").hidden = !state.task.prompt;
  $("image-figure").hidden = !state.task.image_url;
  if (state.task.image_url) $("cond-image").src = state.task.image_url;
  else $("cond-image").removeAttribute("src");
  $("task").hidden = false;
  $("done").hidden = true;
  document.body.dataset.taskId = state.task.task_id;
  document.body.dataset.state = "ready";
  player.load(state.task.left_url, state.task.right_url);
}

async function loadNext() {
  const response = await fetch(`/api/rate/${encodeURIComponent(token)}/next`, { cache: "no-store" });
  if (!response.ok) {
    showMessage((await response.json().catch(() => ({}))).detail || `Server error ${response.status}`);
    return;
  }
  render(await response.json());
}

async function vote(choice) {
  if (!current || busy) return; // one request at a time: a double key press cannot vote twice
  busy = true;
  choiceButtons.forEach((b) => { b.disabled = true; });
  document.body.dataset.state = "voting";
  try {
    const response = await fetch(`/api/rate/${encodeURIComponent(token)}/vote`, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task_id: current.task_id, choice }),
    });
    // 409: this task already had our vote (e.g. sent from another tab); move on either way.
    if (!response.ok && response.status !== 409) {
      showMessage((await response.json().catch(() => ({}))).detail || `Server error ${response.status}`);
      document.body.dataset.state = "error";
      return;
    }
    showMessage("");
    await loadNext();
  } catch (err) {
    showMessage(`Could not reach the server (${err}); your vote was not saved, try again.`);
    document.body.dataset.state = "error";
  } finally {
    busy = false;
    choiceButtons.forEach((b) => { b.disabled = false; });
  }
}

const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", t: "tie", T: "tie" };
document.addEventListener("keydown", (event) => {
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey) return;
  if (event.key === " ") {
    event.preventDefault();
    player.toggle();
  } else if (KEYS[event.key]) {
    event.preventDefault();
    vote(KEYS[event.key]);
  }
});
// Blur after a click so a later space/arrow press goes to the page handler, not to the focused button.
choiceButtons.forEach((b) => b.addEventListener("click", () => { b.blur(); vote(b.dataset.choice); }));
$("play-pause").addEventListener("click", (event) => event.currentTarget.blur());
loadNext();
