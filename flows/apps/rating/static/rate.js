// Rating page: instructions first, then fetch the next task, play both videos in sync, report when each
// video played to its end, and send one vote per task once both did (the server checks the same rules).
"use strict";

const token = document.body.dataset.token;
const $ = (id) => document.getElementById(id);
const api = (path) => `/api/rate/${encodeURIComponent(token)}/${path}`;

// Two videos that start together, share play/pause and restart together once both reached the end
// (native `loop` would let them drift apart when their lengths differ slightly).
class SyncedPair {
  constructor(left, right, button, onVideoEnded) {
    this.videos = [left, right];
    this.button = button;
    this.playing = false;
    this.generation = 0;
    this.starts = 0;
    this.videos.forEach((video, i) => {
      video.muted = true;
      video.loop = false;
      video.addEventListener("ended", () => {
        onVideoEnded(i === 0 ? "left" : "right", video);
        this.onEnded();
      });
    });
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
    if (!results.every(Boolean)) showMessage("A video did not load: answer \u201cVideo broken\u201d.");
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

const choiceButtons = Array.from(document.querySelectorAll("button[data-choice]"));
let current = null;
let busy = false;
// What the server knows about the current task's viewing: videos reported ended, when votes unlock.
let watch = null;

function showMessage(text) {
  $("message").textContent = text;
  $("message").hidden = !text;
}

function watchReady() {
  return Boolean(watch && watch.ended.left && watch.ended.right && performance.now() >= watch.unlockAt);
}

// Buttons follow the rules the server enforces: "Video broken" any time, the rest after the watch.
function updateGate() {
  const ready = watchReady();
  for (const button of choiceButtons) {
    button.disabled = busy || !current || (button.dataset.gated !== undefined && !ready);
  }
  document.body.dataset.watch = ready ? "ok" : "pending";
  if (!watch) return;
  const left = Math.max(0, (watch.unlockAt - performance.now()) / 1000);
  const unplayed = ["left", "right"].filter((side) => !watch.ended[side]);
  $("watch-status").textContent = ready
    ? "You can answer now."
    : unplayed.length
      ? `Watch both videos to the end to unlock the answers (${unplayed.join(" and ")} still playing).`
      : `Answers unlock in ${left.toFixed(1)} s.`;
}
setInterval(updateGate, 200);

async function reportEnded(side, video) {
  if (!current || !watch || watch.ended[side] || watch.reporting[side]) return;
  const taskId = current.task_id;
  // An `ended` from the previous task's video can arrive after the next task was rendered: skip it.
  if (new URL(video.currentSrc || video.src, location.href).searchParams.get("task") !== taskId) return;
  watch.reporting[side] = true;
  try {
    const response = await fetch(api("watched"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task_id: taskId, side }),
    });
    if (watch && watch.taskId === taskId && response.ok) {
      const state = await response.json();
      watch.ended = state.watched;
      watch.unlockAt = performance.now() + state.wait_seconds * 1000;
    }
  } catch (err) {
    showMessage(`Could not reach the server (${err}); keep the page open and try again.`);
  } finally {
    if (watch && watch.taskId === taskId) watch.reporting[side] = false;
    updateGate();
  }
}

const player = new SyncedPair($("video-left"), $("video-right"), $("play-pause"), reportEnded);

function render(state) {
  $("progress-bar").max = state.total;
  $("progress-bar").value = state.done;
  $("instructions").hidden = state.acknowledged;
  if (!state.acknowledged) {
    current = null;
    watch = null;
    $("task").hidden = true;
    $("done").hidden = true;
    document.body.dataset.state = "instructions";
    return;
  }
  if (!state.task) {
    current = null;
    watch = null;
    player.pause();
    $("progress-text").textContent = `All ${state.total} done`;
    $("task").hidden = true;
    $("done").hidden = false;
    document.body.dataset.state = "done";
    updateGate();
    return;
  }
  current = state.task;
  watch = {
    taskId: state.task.task_id,
    ended: { ...state.task.watched },
    reporting: { left: false, right: false },
    unlockAt: performance.now() + state.task.wait_seconds * 1000,
  };
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
  updateGate();
  player.load(state.task.left_url, state.task.right_url);
}

async function send(path, body) {
  const response = await fetch(api(path), {
    method: body === undefined ? "GET" : "POST",
    cache: "no-store",
    headers: { "Content-Type": "application/json" },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  if (!response.ok) {
    showMessage((await response.json().catch(() => ({}))).detail || `Server error ${response.status}`);
    return null;
  }
  return response.json();
}

async function loadNext() {
  const state = await send("next");
  if (state) render(state);
}

async function vote(choice) {
  // One request at a time: a double key press cannot vote twice. Locked buttons mean: not yet.
  const button = choiceButtons.find((b) => b.dataset.choice === choice);
  if (!current || busy || (button && button.disabled)) return;
  busy = true;
  updateGate();
  document.body.dataset.state = "voting";
  try {
    const response = await fetch(api("vote"), {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ task_id: current.task_id, choice }),
    });
    // 409: this task already had our vote (e.g. sent from another tab); move on either way.
    if (!response.ok && response.status !== 409) {
      showMessage((await response.json().catch(() => ({}))).detail || `Server error ${response.status}`);
      document.body.dataset.state = response.status === 428 ? "refused" : "error";
      return;
    }
    showMessage("");
    await loadNext();
  } catch (err) {
    showMessage(`Could not reach the server (${err}); your vote was not saved, try again.`);
    document.body.dataset.state = "error";
  } finally {
    busy = false;
    updateGate();
  }
}

$("start").addEventListener("click", async () => {
  const state = await send("acknowledge", {});
  if (state) render(state);
});

const KEYS = { ArrowLeft: "left", ArrowRight: "right", ArrowDown: "tie", t: "tie", T: "tie", b: "both_bad", B: "both_bad" };
document.addEventListener("keydown", (event) => {
  if (event.repeat || event.altKey || event.ctrlKey || event.metaKey || !current) return;
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
