// Still photos (live page's Photo button and the upload page): decode a picked file, EXIF
// orientation applied, onto a canvas no larger than the detector and the screen need.

/** Longest side kept: more pixels only slow detection down and cost phone memory. */
export const MAX_PHOTO_SIDE = 1600;

/** The file could not be decoded; `title` and `message` are ready to show to the user. */
export class PhotoError extends Error {
  constructor() {
    super('That file is not an image this browser can decode (try a JPEG or PNG).');
    this.name = 'PhotoError';
    this.title = 'Could not read the photo';
  }
}

/**
 * Draw `file` onto `canvas` (resized so that neither side exceeds `maxSide`) and return the
 * canvas; throws PhotoError when the browser cannot decode it.
 */
export async function drawPhoto(file, canvas = document.createElement('canvas'),
  maxSide = MAX_PHOTO_SIDE) {
  let bitmap;
  try {
    bitmap = await createImageBitmap(file, { imageOrientation: 'from-image' });
  } catch {
    throw new PhotoError();
  }
  const scale = Math.min(1, maxSide / Math.max(bitmap.width, bitmap.height));
  canvas.width = Math.round(bitmap.width * scale);
  canvas.height = Math.round(bitmap.height * scale);
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  // Decoded bitmaps hold their full-size pixels until closed (or garbage-collected).
  if (bitmap.close) bitmap.close();
  return canvas;
}
