// "Insert into notebook": a code cell into the current notebook.
import { INotebookTracker, NotebookActions, NotebookPanel } from '@jupyterlab/notebook';

/**
 * Put `code` in a new cell below the active one of the current notebook (into the active cell
 * itself when that is an empty code cell); with no notebook open, in one from `newNotebook`.
 */
export async function insertIntoNotebook(
  tracker: INotebookTracker,
  newNotebook: () => Promise<NotebookPanel>,
  code: string,
): Promise<NotebookPanel> {
  const panel = tracker.currentWidget ?? (await newNotebook());
  await panel.context.ready;
  const notebook = panel.content;
  const active = notebook.activeCell;
  if (!active || active.model.type !== 'code' || active.model.sharedModel.getSource() !== '') {
    NotebookActions.insertBelow(notebook);
  }
  notebook.activeCell!.model.sharedModel.setSource(code);
  return panel;
}
