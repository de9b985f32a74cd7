// SPDX-License-Identifier: GPL-3.0-or-later
//
// Kar-Wai propagation as a Flamenco 3.x job type: one Flamenco task per task of
// a Kar-Wai plan (OUT/.karwai-plan.json, made by `python -m engine plan` or by
// the Blender add-on's "Write Farm Plan"), with the plan's dependencies, and an
// optional last task that encodes the frames to a video.
//
// Install: copy this file into the `scripts/` folder next to the
// flamenco-manager executable and restart the Manager; the job type is named
// after the file, "karwai-propagate". Workers need the task types "karwai"
// (and "ffmpeg" for the video) and a Python with the Kar-Wai engine.
//
// Written against Flamenco's job compiler API as its source defines it
// (projects.blender.org/studio/flamenco, read at the GitHub mirror
// mateusabelli/flamenco, commit cf286e7):
//   internal/manager/job_compilers/author.go  author.Task(name, type), author.Command(name, params),
//                                             task.addCommand, task.addDependency, job.addTask
//   internal/manager/job_compilers/scripts.go globals: print, author, path (basename, dirname, join, stem);
//                                             the job type name is the file name without ".js"
//   internal/worker/command_exec.go           "exec" command: parameters exe (string), args (list of strings)
//   internal/worker/command_ffmpeg.go         "frames-to-video": exe, fps, inputGlob, outputFile, args
//   web/project-website/content/usage/job-types/_index.md  JOB_TYPE settings, `eval` with Path/abspath
// A job script cannot read files, so the plan's task graph reaches it as the
// setting `tasks`: Blender fills it from the plan file when submitting (eval),
// and `python -m engine plan --flamenco-job FILE` writes it into a job for the
// Manager's REST API (POST /api/v3/jobs).

const PLAN_FORMAT = "karwai-plan";

const JOB_TYPE = {
    label: "Kar-Wai Propagate",
    settings: [
        { key: "plan", type: "string", subtype: "file_path", required: true,
          description: "The job's plan, OUT/.karwai-plan.json, as the workers see it" },
        { key: "tasks", type: "string", required: true, visible: "hidden",
          eval: "__import__('json').dumps([[t['id'], t['deps'], t['command']] for t in __import__('json').loads(Path(abspath(settings.plan)).read_text())['tasks']])",
          description: "The plan's task graph as JSON: [[id, [dependency ids], [command line]], ...]" },
        { key: "python", type: "string", default: "python", visible: "submission",
          description: "Python with the Kar-Wai engine on the workers (replaces the plan's 'python')" },
        { key: "video", type: "bool", default: false, visible: "submission",
          description: "Encode the finished frames to a video with FFmpeg" },
        { key: "fps", type: "float", default: 24.0, visible: "submission",
          eval: "C.scene.render.fps / C.scene.render.fps_base",
          description: "Frame rate of the video" },
        { key: "frame_extension", type: "string", default: ".png", visible: "submission",
          description: "File extension of the output frames" },
    ]
};

function compileJob(job) {
    const settings = job.settings;
    const graph = parseTasks(settings.tasks);
    const exe = settings.python || "python";

    const byId = {};
    const authored = [];
    for (const [id, deps, command] of graph) {
        const task = author.Task(id, "karwai");
        task.addCommand(author.Command("exec", { exe: exe, args: command.slice(1) }));
        for (const dep of deps) {
            if (!(dep in byId)) {
                throw `Kar-Wai plan: task ${id} depends on ${dep}, which comes later or is missing (setting tasks)`;
            }
            task.addDependency(byId[dep]);
        }
        byId[id] = task;
        authored.push(task);
        job.addTask(task);
    }

    if (settings.video) {
        const outDir = path.dirname(settings.plan);
        const videoTask = author.Task("frames-to-video", "ffmpeg");
        videoTask.addCommand(author.Command("frames-to-video", {
            exe: "ffmpeg",
            fps: settings.fps,
            inputGlob: path.join(outDir, `*${settings.frame_extension}`),
            outputFile: path.join(outDir, `${path.stem(outDir)}.mp4`),
            args: ["-c:v", "h264", "-crf", "18", "-pix_fmt", "yuv420p",
                   "-vf", "pad=ceil(iw/2)*2:ceil(ih/2)*2", "-r", settings.fps, "-y"],
        }));
        videoTask.addDependency(byId["end"]);
        job.addTask(videoTask);
    }
    print(`Kar-Wai: ${authored.length} tasks from ${settings.plan}`);
}

function parseTasks(text) {
    let graph;
    try {
        graph = JSON.parse(text);
    } catch (err) {
        throw `Kar-Wai plan: setting tasks is not JSON (${err}); submit from the add-on or with python -m engine plan --flamenco-job`;
    }
    if (!Array.isArray(graph) || graph.length === 0) {
        throw "Kar-Wai plan: setting tasks holds no tasks";
    }
    for (const entry of graph) {
        const ok = Array.isArray(entry) && entry.length === 3 && typeof entry[0] === "string" &&
            Array.isArray(entry[1]) && Array.isArray(entry[2]) && entry[2].length >= 6 &&
            entry[2][1] === "-m" && entry[2][2] === "engine" && entry[2][3] === "run-task" &&
            entry[2][5] === entry[0];
        if (!ok) {
            throw `Kar-Wai plan: setting tasks has an entry that is not [id, deps, python -m engine run-task PLAN id]: ${JSON.stringify(entry)}`;
        }
    }
    if (graph[graph.length - 1][0] !== "end") {
        throw "Kar-Wai plan: setting tasks does not end with the plan's 'end' task";
    }
    return graph;
}
