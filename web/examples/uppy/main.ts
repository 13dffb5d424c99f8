// The Uppy example (/examples/uppy): an Uppy Dashboard whose uploads go into Dropfile. The
// lines a page of its own needs are the imports and the two `uppy` statements below.
import AwsS3 from "@uppy/aws-s3";
import Uppy from "@uppy/core";
import Dashboard from "@uppy/dashboard";
import "@uppy/core/css/style.min.css";
import "@uppy/dashboard/css/style.min.css";

// The served module, /uppy/dropfile-uppy.js (vite.config.ts keeps it an import of that URL).
import { dropfileUppy, isSignedIn, type DropfileUploadResult } from "@dropfile/uppy";
import "./example.css";

const uppy = new Uppy({ id: "dropfile-example" })
  .use(Dashboard, {
    target: "#uppy", inline: true, height: 420, proudlyDisplayPoweredByUppy: false,
  });
uppy.use(AwsS3, dropfileUppy(uppy));

const uploaded = document.querySelector<HTMLUListElement>("#uploaded")!;
uppy.on("upload-success", (file, response) => {
  const { fileId } = response.body as unknown as DropfileUploadResult;
  const item = document.createElement("li");
  item.dataset.fileId = fileId;
  item.textContent = `${file?.name ?? "a file"}: Dropfile file ${fileId}`;
  uploaded.append(item);
});

const session = document.querySelector<HTMLParagraphElement>("#session")!;
isSignedIn().then((signedIn) => {
  session.textContent = signedIn ? "Signed in: uploads go to your Dropfile account."
    : "You are not signed in: sign in at Dropfile first, then come back.";
  session.dataset.signedIn = String(signedIn);
}, () => {
  session.textContent = "Dropfile cannot be reached right now.";
});
